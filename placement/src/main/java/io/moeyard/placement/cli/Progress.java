package io.moeyard.placement.cli;

import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * A progress bar on stderr for work long enough to wonder about, shown only on a terminal: in
 * pipes and CI logs a redrawn bar is noise, and stdout stays clean for the report either way.
 */
final class Progress implements AutoCloseable {
  private final ProgressBar bar;

  private Progress(ProgressBar bar) {
    this.bar = bar;
  }

  static Progress start(String task, long total, boolean worthShowing) {
    java.io.Console c = System.console();
    if (!worthShowing || c == null || !c.isTerminal()) return new Progress(null);
    return new Progress(new ProgressBarBuilder().setTaskName(task).setInitialMax(total)
        .setStyle(ProgressBarStyle.ASCII).setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err))
        .build());
  }

  void step() {
    if (bar != null) bar.step();
  }

  @Override
  public void close() {
    if (bar != null) bar.close();
  }
}
