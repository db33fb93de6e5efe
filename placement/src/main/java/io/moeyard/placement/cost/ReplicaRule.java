package io.moeyard.placement.cost;

import java.util.Locale;

/**
 * Which replica of an expert a token's transition uses, for scoring where transitions stay: it
 * depends on the serving engine's dispatcher, so the user says which one theirs is
 * ({@code moeyard plan --replica-rule}). Without replicas both rules give the same counts.
 */
public enum ReplicaRule {
  /**
   * Each replica of an expert is equally likely (a dispatcher that spreads a hot expert's tokens
   * over its replicas): a -> b stays on a GPU with probability sum_g share_a(g) * share_b(g).
   */
  UNIFORM("uniform"),
  /**
   * A transition a -> b stays on a GPU (node) when some replica of a and some replica of b share
   * it: the token sits at the replica of a it used and the dispatcher picks the replica of b
   * nearest to it (SGLang's static dispatch prefers the same GPU, then the same node).
   */
  NEAREST("nearest");

  public final String id;

  ReplicaRule(String id) {
    this.id = id;
  }

  /** The rule named {@code id} (uniform or nearest); IllegalArgumentException naming it otherwise. */
  public static ReplicaRule byId(String id) {
    for (ReplicaRule r : values()) if (r.id.equals(id.toLowerCase(Locale.ROOT))) return r;
    throw new IllegalArgumentException("--replica-rule " + id + " is not one of uniform, nearest");
  }
}
