package io.theflash.spark;

import java.nio.charset.StandardCharsets;
import java.util.regex.Pattern;

/**
 * A time as the Python side reads options as_of / timestampAsOf, startingTimestamp and
 * endingTimestamp (scan/snapshot.py as_of_to_ts), so that the jar refuses exactly the values the
 * service and the Python source refuse and gives the same TSO for the rest. as_of_to_ts strips
 * the text (str.strip), reads it as unix seconds when Python's float() takes it
 * ({@code datetime.fromtimestamp(s, utc)}, rounded half-even to the microsecond), else as
 * {@code datetime.fromisoformat(text.replace("Z", "+00:00"))} of Python 3.11, which this class
 * ports from CPython's C implementation (Modules/_datetimemodule.c) as it behaves:
 * <ul>
 * <li>a date: YYYY-MM-DD, YYYYMMDD, YYYY-Www, YYYYWww, YYYY-Www-D, YYYYWwwD (ISO week dates);</li>
 * <li>then, after any one character (T, a space, or anything else), a time: HH, HH:MM, HHMM,
 * HH:MM:SS, HHMMSS, with a fraction after {@code .} or {@code ,} of any number of digits (the
 * first six are taken, the rest truncated);</li>
 * <li>then an offset: {@code +} or {@code -} with HH, HHMM, HH:MM, HHMMSS, HH:MM:SS and a
 * fraction, or Z; strictly within a day. Without an offset the time is UTC (naive = UTC,
 * codec/tso.py datetime_to_ts), not the Spark session's time zone.</li>
 * </ul>
 * The TSO is the last of the time's millisecond (the microseconds floored to it); a time outside
 * what a TSO holds (before 1970, after its 46 bits of milliseconds) is refused, as Python refuses it.
 * tests/spark/test_jvm_source.py runs both parsers over the same texts.
 */
final class AsOfTime {
  private AsOfTime() {}

  /** The largest physical part of a TSO (46 bits of milliseconds), as codec/tso.py MAX_TS. */
  static final long MAX_MS = (1L << 46) - 1;

  /** The last TSO of the millisecond {@code text} names; refused under {@code name} as Python refuses it. */
  static long toTs(String name, String text) {
    long micros = micros(name, text);
    long ms = Math.floorDiv(micros, 1000L);
    if (ms < 0 || ms > MAX_MS) throw outOfRange(name, text);
    return (ms << 18) | ((1L << 18) - 1);
  }

  static UserErrorException notATime(String name, String text) {
    return new UserErrorException("option " + name + "=" + ReadOptions.quote(text) + " is not a time: write "
        + "ISO-8601 like '2026-11-21 06:00:00' (UTC unless an offset such as +08:00 is given) or unix seconds");
  }

  static UserErrorException outOfRange(String name, String text) {
    return new UserErrorException("option " + name + "=" + ReadOptions.quote(text) + " is outside the times a "
        + "TSO holds: from 1970-01-01 00:00:00 to 4199-11-24 01:22:57.663 UTC");
  }

  /** Unix microseconds of {@code text} (UTC), as as_of_to_ts reads it before taking its millisecond. */
  static long micros(String name, String text) {
    String raw = strip(text);
    Double seconds = pythonFloat(raw);
    if (seconds != null) {
      if (seconds.isNaN() || seconds.isInfinite()) throw notATime(name, text);
      Long micros = fromTimestamp(seconds);
      if (micros == null) throw outOfRange(name, text);
      return micros;
    }
    long[] f = fromIsoFormat(raw.replace("Z", "+00:00"));
    if (f == null) throw notATime(name, text);
    long day;
    try {
      day = java.time.LocalDate.of((int) f[0], (int) f[1], (int) f[2]).toEpochDay();
    } catch (java.time.DateTimeException e) {
      throw notATime(name, text);
    }
    return ((day * 86400 + f[3] * 3600 + f[4] * 60 + f[5]) * 1_000_000L + f[6]) - f[7];
  }

  // -- Python's str.strip() and float() ------------------------------------------------------

  /** Python's {@code str.isspace()} characters (Unicode 14, as Python 3.11 has them). */
  static boolean isPythonSpace(int c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
        || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
  }

  /** Python's {@code str.strip()}: Python's whitespace off both ends (Java's trim takes other characters). */
  static String strip(String s) {
    int start = 0;
    int end = s.length();
    while (start < end && isPythonSpace(s.codePointAt(start))) start += Character.charCount(s.codePointAt(start));
    while (end > start && isPythonSpace(s.codePointBefore(end))) end -= Character.charCount(s.codePointBefore(end));
    return s.substring(start, end);
  }

  /** The code points of each Unicode decimal digit zero (Python 3.11's Unicode 14; each run is 0-9). */
  private static final int[] DIGIT_ZEROS = {0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6,
      0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
      0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0,
      0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
      0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
      0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0};

  /** Python's {@code unicodedata.decimal(c)}, or -1. */
  static int decimal(int c) {
    for (int zero : DIGIT_ZEROS) {
      if (c >= zero && c < zero + 10) return c - zero;
    }
    return -1;
  }

  private static final Pattern FLOAT = Pattern.compile("[+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?");
  private static final Pattern INF_NAN = Pattern.compile("[+-]?(?:inf|infinity|nan)", Pattern.CASE_INSENSITIVE);

  /**
   * Python's {@code float(s)} of a stripped string, or null where it raises: Unicode digits
   * read as digits, underscores only between digits, no hex, inf and nan (which as_of_to_ts
   * then refuses).
   */
  static Double pythonFloat(String s) {
    StringBuilder ascii = new StringBuilder();
    for (int i = 0; i < s.length(); ) {
      int c = s.codePointAt(i);
      i += Character.charCount(c);
      if (c < 127) {
        ascii.append((char) c);
      } else if (isPythonSpace(c)) {
        ascii.append(' ');
      } else if (decimal(c) >= 0) {
        ascii.append((char) ('0' + decimal(c)));
      } else {
        return null;
      }
    }
    StringBuilder plain = new StringBuilder();
    char prev = '\0';
    for (int i = 0; i < ascii.length(); i++) {
      char c = ascii.charAt(i);
      if (c == '_') {
        if (!(prev >= '0' && prev <= '9')) return null;
      } else {
        if (prev == '_' && !(c >= '0' && c <= '9')) return null;
        plain.append(c);
      }
      prev = c;
    }
    if (prev == '_') return null;
    String t = plain.toString(); // stripped already: a space within fails, as in Python
    if (INF_NAN.matcher(t).matches()) return Double.NaN; // not a time either way
    if (!FLOAT.matcher(t).matches()) return null;
    return Double.parseDouble(t); // correctly rounded, as Python's dtoa
  }

  /**
   * Unix microseconds of {@code datetime.fromtimestamp(seconds, timezone.utc)}: CPython's
   * _PyTime_DoubleToDenominator (modf, the fraction times 1e6 rounded half-even), or null for
   * seconds no datetime holds.
   */
  static Long fromTimestamp(double seconds) {
    double intpart = seconds < 0 ? Math.ceil(seconds) : Math.floor(seconds);
    double floatpart = seconds - intpart;
    floatpart = Math.rint(floatpart * 1e6);
    if (floatpart >= 1e6) {
      floatpart -= 1e6;
      intpart += 1.0;
    } else if (floatpart < 0) {
      floatpart += 1e6;
      intpart -= 1.0;
    }
    // datetime's years 1..9999; wider than a TSO's range, which the caller checks
    if (intpart < -62135596800.0 || intpart > 253402300799.0) return null;
    return (long) intpart * 1_000_000L + (long) floatpart;
  }

  // -- datetime.fromisoformat (CPython 3.11, Modules/_datetimemodule.c) ----------------------

  /**
   * {year, month, day, hour, minute, second, microsecond, UTC offset in microseconds} of
   * {@code datetime.fromisoformat(s)}, or null where it raises (the date's own range is left
   * to the caller).
   */
  static long[] fromIsoFormat(String s) {
    int[] cps = s.codePoints().toArray();
    if (cps.length < 7) return null;
    for (int pos : new int[] {7, 8, 10}) { // a surrogate separator is taken as T
      if (pos > cps.length) break;
      if (pos < cps.length && cps[pos] >= 0xD800 && cps[pos] <= 0xDFFF) {
        cps[pos] = 'T';
        break;
      }
    }
    for (int c : cps) {
      if (c >= 0xD800 && c <= 0xDFFF) return null; // not encodable as UTF-8
    }
    byte[] utf8 = new String(cps, 0, cps.length).getBytes(StandardCharsets.UTF_8);
    Bytes b = new Bytes(utf8);
    int len = utf8.length;
    int sep = separator(b, len);
    if (sep < 0) return null;
    long[] out = new long[8];
    if (parseDate(b, sep, out) != 0) return null;
    int rv = 0;
    if (len > sep) {
      int p = sep;
      int lead = b.at(p) & 0xff;
      if ((lead & 0x80) == 0) {
        p += 1;
      } else if ((lead & 0xf0) == 0xe0) {
        p += 3;
      } else if ((lead & 0xf0) == 0xf0) {
        p += 4;
      } else {
        p += 2;
      }
      rv = parseTime(b, p, len, out);
      if (rv < 0) return null;
    }
    if (out[3] > 23 || out[4] > 59 || out[5] > 59) return null;
    if (out[0] < 1 || out[0] > 9999) return null;
    if (rv == 1) {
      long offset = out[7];
      if (Math.abs(offset) >= 86_400_000_000L) return null; // a timezone is strictly within a day
    }
    return out;
  }

  /** The UTF-8 bytes, with the C string's NUL after them (CPython reads up to it). */
  private static final class Bytes {
    final byte[] b;

    Bytes(byte[] b) {
      this.b = b;
    }

    int at(int i) {
      return i >= 0 && i < b.length ? b[i] : 0;
    }
  }

  private static boolean isDigit(int c) {
    return c >= '0' && c <= '9';
  }

  /** parse_digits: {@code n} ASCII digits at {@code p} into {@code into[0]}, the position after them, or -1. */
  private static int digits(Bytes b, int p, int n, long[] into) {
    long v = 0;
    for (int i = 0; i < n; i++) {
      int c = b.at(p++);
      if (!isDigit(c)) return -1;
      v = v * 10 + (c - '0');
    }
    into[0] = v;
    return p;
  }

  /** _find_isoformat_datetime_separator. */
  private static int separator(Bytes b, int len) {
    if (len == 7) return 7;
    if (b.at(4) == '-') {
      if (b.at(5) == 'W') {
        if (len > 8 && b.at(8) == '-') {
          if (len == 9) return -1;
          if (len > 10 && isDigit(b.at(10))) return 8;
          return 10;
        }
        return 8;
      }
      return 10;
    }
    if (b.at(4) == 'W') {
      int idx = 7;
      for (; idx < len; idx++) {
        if (!isDigit(b.at(idx))) break;
      }
      if (idx < 9) return idx;
      return idx % 2 == 0 ? 7 : 8;
    }
    return 8;
  }

  /** parse_isoformat_date into out[0..2]: 0, or negative where it fails. */
  private static int parseDate(Bytes b, int len, long[] out) {
    long[] v = new long[1];
    int p = digits(b, 0, 4, v);
    if (p < 0) return -1;
    long year = v[0];
    boolean sep = b.at(p) == '-';
    if (sep) p++;
    if (b.at(p) == 'W') {
      p++;
      p = digits(b, p, 2, v);
      if (p < 0) return -3;
      long week = v[0];
      long day;
      if (p < len) {
        if (sep && b.at(p++) != '-') return -2;
        p = digits(b, p, 1, v);
        if (p < 0) return -4;
        day = v[0];
      } else {
        day = 1;
      }
      return isoWeekDate(year, week, day, out);
    }
    p = digits(b, p, 2, v);
    if (p < 0) return -1;
    long month = v[0];
    if (sep && b.at(p++) != '-') return -2;
    p = digits(b, p, 2, v);
    if (p < 0) return -1;
    out[0] = year;
    out[1] = month;
    out[2] = v[0];
    return 0;
  }

  /** iso_to_ymd: week 53 only in a year that has one, days 1-7; the date in out[0..2]. */
  private static int isoWeekDate(long year, long week, long day, long[] out) {
    if (year < 1 || year > 9999) return -5; // CPython computes nonsense here, which its checks refuse
    java.time.LocalDate jan1 = java.time.LocalDate.of((int) year, 1, 1);
    if (week <= 0 || week >= 53) {
      int weekday = jan1.getDayOfWeek().getValue() - 1; // Monday 0
      boolean has53 = week == 53 && (weekday == 3 || (weekday == 2 && jan1.isLeapYear()));
      if (!has53) return -5;
    }
    if (day <= 0 || day >= 8) return -6;
    java.time.LocalDate monday1 = java.time.LocalDate.of((int) year, 1, 4)
        .with(java.time.temporal.TemporalAdjusters.previousOrSame(java.time.DayOfWeek.MONDAY));
    java.time.LocalDate d = monday1.plusDays((week - 1) * 7 + day - 1);
    out[0] = d.getYear();
    out[1] = d.getMonthValue();
    out[2] = d.getDayOfMonth();
    return 0;
  }

  /**
   * parse_hh_mm_ss_ff over [p, end): {hour, minute, second, microsecond} into out[k..k+3];
   * 0 at the end of the string, 1 before more text, negative where it fails.
   */
  private static int hhmmssff(Bytes b, int p, int end, long[] out, int k) {
    out[k] = out[k + 1] = out[k + 2] = out[k + 3] = 0;
    long[] v = new long[1];
    boolean hasSep = true;
    for (int i = 0; i < 3; i++) {
      p = digits(b, p, 2, v);
      if (p < 0) return -3;
      out[k + i] = v[0];
      int c = b.at(p++);
      if (i == 0) hasSep = c == ':';
      if (p >= end) {
        return c != 0 ? 1 : 0;
      } else if (hasSep && c == ':') {
        continue;
      } else if (c == '.' || c == ',') {
        break;
      } else if (!hasSep) {
        --p;
      } else {
        return -4;
      }
    }
    int remains = end - p;
    int toParse = Math.min(remains, 6);
    p = digits(b, p, toParse, v);
    if (p < 0) return -3;
    long us = v[0];
    for (int i = toParse; i < 6; i++) us *= 10;
    out[k + 3] = us;
    while (isDigit(b.at(p))) p++;
    return b.at(p) != 0 ? 1 : 0;
  }

  /** parse_isoformat_time of [p, p + len) into out[3..6] and the offset into out[7]: 0, 1 (an offset), or negative. */
  private static int parseTime(Bytes b, int p, int strEnd, long[] out) {
    int end = strEnd;
    int tz = p;
    do {
      int c = b.at(tz);
      if (c == 'Z' || c == '+' || c == '-') break;
    } while (++tz < end);
    int rv = hhmmssff(b, p, tz, out, 3);
    if (rv < 0) return rv;
    if (tz == end) return rv == 1 ? -5 : 0;
    if (b.at(tz) == 'Z') { // as_of_to_ts replaces Z first; kept as CPython has it
      out[7] = 0;
      return b.at(tz + 1) != 0 ? -5 : 1;
    }
    long sign = b.at(tz) == '-' ? -1 : 1;
    long[] z = new long[4];
    rv = hhmmssff(b, tz + 1, end, z, 0);
    long seconds = sign * (z[0] * 3600 + z[1] * 60 + z[2]);
    // a zero offset in seconds is UTC whatever its microseconds (tzinfo_from_isoformat_results)
    out[7] = seconds == 0 ? 0 : seconds * 1_000_000L + sign * z[3];
    return rv != 0 ? -5 : 1;
  }
}
