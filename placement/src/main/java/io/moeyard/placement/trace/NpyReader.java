package io.moeyard.placement.trace;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads integer {@code .npy} files (format versions 1 to 3), the container SGLang's per-token
 * recorder, vLLM's routed-experts output and ExFlow write routing traces in.
 *
 * <p>Only what routing traces use is accepted: signed integers of 1, 2, 4 or 8 bytes, either byte
 * order, C order. Everything else is refused with the reason, rather than guessed at: a Fortran
 * order array read as C order would silently scramble which token chose which expert.
 */
public final class NpyReader {
  private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
  private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
  private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
  private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

  private NpyReader() {}

  public static NpyArray read(Path file) throws IOException {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      long fileSize = ch.size();
      if (fileSize == 0) throw new TraceFormatException(file + ": file is empty");
      ByteBuffer pre = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, pre, 0);
      pre.flip();
      if (pre.remaining() < 10) throw new TraceFormatException(file + ": too short for a .npy header");
      for (byte b : MAGIC) {
        if (pre.get() != b) throw new TraceFormatException(file + ": not a .npy file (bad magic)");
      }
      int major = pre.get() & 0xff;
      pre.get(); // minor version: no layout difference
      long headerLen;
      int headerStart;
      if (major == 1) {
        headerLen = pre.getShort() & 0xffff;
        headerStart = 10;
      } else if (major == 2 || major == 3) {
        if (pre.remaining() < 4) throw new TraceFormatException(file + ": too short for a .npy header");
        headerLen = pre.getInt() & 0xffffffffL;
        headerStart = 12;
      } else {
        throw new TraceFormatException(file + ": unsupported .npy format version " + major);
      }
      if (headerStart + headerLen > fileSize) throw new TraceFormatException(file + ": header runs past end of file");
      ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
      readFully(ch, hb, headerStart);
      String header = new String(hb.array(), 0, hb.position(),
          major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
      String descr = group(DESCR, header, file, "descr");
      String fortran = group(FORTRAN, header, file, "fortran_order");
      String shapeText = group(SHAPE, header, file, "shape");
      if (fortran.equals("True")) {
        throw new TraceFormatException(file + ": Fortran-order array; save it in C order (np.ascontiguousarray)");
      }
      int[] shape = parseShape(shapeText, file);
      if (descr.length() != 3 || "<>|=".indexOf(descr.charAt(0)) < 0 || descr.charAt(1) != 'i'
          || "1248".indexOf(descr.charAt(2)) < 0) {
        throw new TraceFormatException(file + ": dtype " + descr + " is not a signed integer type (int8/16/32/64)");
      }
      int item = descr.charAt(2) - '0';
      ByteOrder order = descr.charAt(0) == '>' ? ByteOrder.BIG_ENDIAN : ByteOrder.LITTLE_ENDIAN;
      long count = 1;
      for (int d : shape) count *= d;
      long dataStart = headerStart + headerLen;
      long expected = count * item;
      if (fileSize - dataStart < expected) {
        throw new TraceFormatException(file + ": truncated: shape " + shapeText.trim() + " needs " + expected
            + " data bytes, file has " + (fileSize - dataStart));
      }
      if (count > Integer.MAX_VALUE - 8) {
        throw new TraceFormatException(file + ": " + count + " values is more than one array holds; split the trace");
      }
      int[] data = new int[(int) count];
      long pos = dataStart;
      int filled = 0;
      int chunkItems = 1 << 20;
      ByteBuffer buf = ByteBuffer.allocate(chunkItems * item).order(order);
      while (filled < count) {
        int n = (int) Math.min(chunkItems, count - filled);
        buf.clear().limit(n * item);
        readFully(ch, buf, pos);
        if (buf.position() != n * item) throw new TraceFormatException(file + ": truncated data");
        pos += (long) n * item;
        buf.flip();
        for (int i = 0; i < n; i++) {
          data[filled++] = switch (item) {
            case 1 -> buf.get();
            case 2 -> buf.getShort();
            case 4 -> buf.getInt();
            default -> {
              long v = buf.getLong();
              if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
                throw new TraceFormatException(file + ": value " + v + " at index " + (filled - 1) + " does not fit an expert id");
              }
              yield (int) v;
            }
          };
        }
      }
      return new NpyArray(shape, data, descr);
    }
  }

  private static void readFully(FileChannel ch, ByteBuffer dst, long pos) throws IOException {
    while (dst.hasRemaining()) {
      int n = ch.read(dst, pos);
      if (n < 0) break;
      pos += n;
    }
  }

  private static String group(Pattern p, String header, Path file, String key) {
    Matcher m = p.matcher(header);
    if (!m.find()) throw new TraceFormatException(file + ": malformed .npy header: no '" + key + "' in " + header.trim());
    return m.group(1);
  }

  private static int[] parseShape(String text, Path file) {
    String t = text.trim();
    if (t.isEmpty()) return new int[0];
    String[] parts = t.split(",");
    int n = 0;
    int[] out = new int[parts.length];
    for (String p : parts) {
      String s = p.trim();
      if (s.isEmpty()) continue;
      s = s.endsWith("L") ? s.substring(0, s.length() - 1) : s;
      try {
        long v = Long.parseLong(s);
        if (v < 0 || v > Integer.MAX_VALUE) throw new NumberFormatException();
        out[n++] = (int) v;
      } catch (NumberFormatException e) {
        throw new TraceFormatException(file + ": malformed .npy shape (" + text + ")");
      }
    }
    return java.util.Arrays.copyOf(out, n);
  }
}
