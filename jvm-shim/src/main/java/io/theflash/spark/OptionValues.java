package io.theflash.spark;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The values of a read's durations, sizes, counts and schema mode, read by the Python source's
 * rules (pyspark_theflash/scan/options.py parse_duration_s, parse_size_bytes,
 * parse_positive_int, SCHEMA_MODES), refused with its words: a read refused by one is refused by
 * the other, saying the same thing. Whitespace is Python's ({@link AsOfTime#strip}).
 */
final class OptionValues {
  private OptionValues() {}

  private static final Pattern NUMBER = Pattern.compile("([0-9]*\\.?[0-9]+)(.*)", Pattern.DOTALL);

  /** "500ms", "30s", "2m", "1h" or a bare number of seconds, as seconds. */
  static double durationS(String name, String text) {
    String[] parts = numberAndUnit(text);
    Double unit = parts == null ? null : durationUnit(parts[1].isEmpty() ? "s" : parts[1]);
    if (unit == null) {
      throw new UserErrorException("option " + name + "=" + ReadOptions.quote(text)
          + " is not a duration; write e.g. 500ms, 30s or 2m");
    }
    return Double.parseDouble(parts[0]) * unit;
  }

  /** "64MiB", "1g", "4096" (bytes), as bytes. */
  static long sizeBytes(String name, String text) {
    String[] parts = numberAndUnit(text);
    Long unit = parts == null ? null : sizeUnit(parts[1].isEmpty() ? "b" : parts[1]);
    if (unit == null) {
      throw new UserErrorException("option " + name + "=" + ReadOptions.quote(text)
          + " is not a size; write e.g. 64MiB or 1048576");
    }
    return (long) (Double.parseDouble(parts[0]) * unit);
  }

  /** A count above zero (Python's int(): a sign, digits of any script, underscores between them). */
  static long positiveInt(String name, String text) {
    String s = AsOfTime.strip(text);
    long value;
    try {
      if (!s.matches("[+-]?[^_+-]+(_[^_]+)*")) throw new NumberFormatException(s);
      value = Long.parseLong(s.replace("_", ""));
    } catch (NumberFormatException e) {
      throw new UserErrorException("option " + name + "=" + ReadOptions.quote(text) + " is not an integer");
    }
    if (value <= 0) {
      throw new UserErrorException("option " + name + "=" + ReadOptions.quote(text) + " must be positive");
    }
    return value;
  }

  /** Option schema: as_of (default) or current, as the service reads it. */
  static void schemaMode(String text) {
    if (text.isEmpty()) return; // the default; blanks are not (Python's `or "as_of"` sees them)
    String mode = AsOfTime.strip(text).toLowerCase(Locale.ROOT).replace('-', '_');
    if (!mode.equals("as_of") && !mode.equals("current")) {
      throw new UserErrorException("option schema=" + ReadOptions.quote(text) + ": use as_of (default) or current");
    }
  }

  /** The number and the unit of "  1.5 ms " (the unit lower case, maybe empty), or null. */
  private static String[] numberAndUnit(String text) {
    Matcher m = NUMBER.matcher(AsOfTime.strip(text));
    if (!m.matches()) return null;
    return new String[] {m.group(1), AsOfTime.strip(m.group(2)).toLowerCase(Locale.ROOT)};
  }

  private static Double durationUnit(String unit) {
    switch (unit) {
      case "ms": return 0.001;
      case "s": return 1.0;
      case "m": case "min": return 60.0;
      case "h": return 3600.0;
      default: return null;
    }
  }

  private static Long sizeUnit(String unit) {
    switch (unit) {
      case "b": return 1L;
      case "k": case "kb": case "kib": return 1L << 10;
      case "m": case "mb": case "mib": return 1L << 20;
      case "g": case "gb": case "gib": return 1L << 30;
      default: return null;
    }
  }
}
