package io.moeyard.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moeyard.engine.DType;
import io.moeyard.engine.testkit.TestSeed;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The slab carving of {@link RankBuffers}, without a device: a peer's view of a rank's memory
 * must find every buffer at the same offset as the owner (they share nothing but the base), every
 * buffer aligned for the kernels' widest loads, inside the slab and apart from the others.
 */
class RankBuffersHostTest {

  /** Every device-address field of a view, by name (base and size excluded). */
  private static List<Field> bufferFields() {
    List<Field> out = new ArrayList<>();
    for (Field f : RankBuffers.class.getDeclaredFields()) {
      if (f.getType() != long.class || Modifier.isStatic(f.getModifiers())) continue;
      if (f.getName().equals("base") || f.getName().equals("bytes") || f.getName().equals("cursor")) continue;
      f.setAccessible(true);
      out.add(f);
    }
    return out;
  }

  @Test
  void viewsOfOneShapeAgreeOnEveryOffsetAndBuffersNeitherOverlapNorStrayOutside() throws Exception {
    TestSeed seed = TestSeed.fresh();
    SplittableRandom rnd = seed.random();
    List<Field> fields = bufferFields();
    assertTrue(fields.size() > 30, "found " + fields.size() + " buffer fields");
    seed.check(() -> {
      for (int iter = 0; iter < 200; iter++) {
        DType dt = DType.values()[rnd.nextInt(DType.values().length)];
        int ranks = 1 + rnd.nextInt(8);
        int local = rnd.nextBoolean() ? ranks : 1;
        int s = 1 + rnd.nextInt(4);
        int experts = 1 + rnd.nextInt(ranks * s);
        int k = 1 + rnd.nextInt(Math.min(experts, 8));
        int hidden = dt == DType.FP8_E4M3 ? DType.FP8_SCALE_BLOCK * (1 + rnd.nextInt(3)) : 8 + rnd.nextInt(600);
        var wl = KernelCases.random(rnd, ranks, local, s, experts, k, hidden, dt, rnd.nextInt(300), 0.1);
        KernelShape shape = KernelCases.shape(wl, rnd.nextInt(400));
        int chunk = 1 + rnd.nextInt(512);
        long a = RankBuffers.ALIGN * (1 + rnd.nextInt(1 << 20));
        long b = RankBuffers.ALIGN * (1L << 30) + RankBuffers.ALIGN * rnd.nextInt(1 << 20);
        RankBuffers va = RankBuffers.view(shape, chunk, a);
        RankBuffers vb = RankBuffers.view(shape, chunk, b);
        String at = "iter " + iter + " " + wl + " chunk " + chunk;
        assertEquals(va.bytes, vb.bytes, at);
        List<long[]> spans = new ArrayList<>();
        long[] sizes = sizes(shape, chunk);
        int i = 0;
        for (Field f : fields) {
          long pa = f.getLong(va);
          long pb = f.getLong(vb);
          if (pa == 0) { // a buffer this dtype does not have (FP8 scales)
            assertEquals(0L, pb, f.getName() + " " + at);
            continue;
          }
          assertEquals(pa - a, pb - b, "offset of " + f.getName() + " " + at);
          assertEquals(0, (pa - a) % RankBuffers.ALIGN, f.getName() + " aligned " + at);
          spans.add(new long[] {pa, pa + Math.max(0, sizes[i]), i});
          i++;
        }
        spans.sort((x, y) -> Long.compare(x[0], y[0]));
        for (int j = 0; j < spans.size(); j++) {
          assertTrue(spans.get(j)[0] >= a && spans.get(j)[1] <= a + va.bytes, "inside the slab " + at);
          if (j > 0) assertTrue(spans.get(j - 1)[1] <= spans.get(j)[0], "buffers apart " + at);
        }
        assertTrue(va.overlaps(a + va.bytes - 1, 1) && !va.overlaps(a + va.bytes, 8) && !va.overlaps(a - 8, 8), at);
      }
    });
  }

  /**
   * The bytes the buffers hold, in declaration order (skipping absent FP8 scales), spelled out
   * from the shape independently of the carving: the layout this test holds the slab to.
   */
  private static long[] sizes(KernelShape shape, int chunk) {
    int nR = shape.ranks();
    int nS = shape.slotsPerRank();
    int nP = shape.slots();
    int nK = shape.topk();
    int sc = shape.scaleCols();
    long rb = shape.rowBytes();
    long cb = shape.combineRowBytes();
    long t = shape.maxTokens();
    long tk = t * nK;
    long rows = shape.receiveRows();
    long pairs = Math.min(rows, (long) nR * t);
    int nb = nP + nR;
    long chunks = Math.max(1, (t + chunk - 1) / chunk);
    List<Long> s = new ArrayList<>(List.of(4 * tk, 4 * tk, 4 * tk, 4 * tk, 4 * tk, 4 * tk, t * nR, 4 * (t + 1),
        4 * chunks * nb, 4 * chunks * nb, 4L * (nb + 1), 4L * (nP + 1), 4 * (chunks + 1), rows * rb));
    if (sc > 0) s.add(4 * rows * sc);
    s.addAll(List.of(4 * rows, 4 * pairs, 4 * pairs, 4 * pairs, 4 * pairs * nK, 4L * nR * nS, 4L * nS, 4L * nR * nS,
        4L * (nS + 1), 4L * (nR + 1), 4L * (nR * nS + 1), tk * rb));
    if (sc > 0) s.add(4 * tk * sc);
    s.addAll(List.of(4 * tk, rows * rb));
    if (sc > 0) s.add(4 * rows * sc);
    s.addAll(List.of(4 * rows, t * Math.min(nR, nK) * cb, rows * cb, tk * cb));
    return s.stream().mapToLong(Long::longValue).toArray();
  }
}
