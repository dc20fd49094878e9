package io.theflash.spark;

import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.spark.sql.connector.expressions.Expression;
import org.apache.spark.sql.connector.expressions.Literal;
import org.apache.spark.sql.connector.expressions.NamedReference;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.types.BinaryType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.DayTimeIntervalType;
import org.apache.spark.sql.types.Decimal;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.types.TimestampNTZType;
import org.apache.spark.sql.types.TimestampType;

/**
 * Spark's V2 predicates as the service's filter (docs/service.md, "The filter"), only where
 * the service evaluates them exactly as Spark does: every row it returns satisfies the
 * predicate and it returns every row that does. Anything else (casts, functions, floating
 * point columns, whose NaN Spark orders above every number) gives null and stays with Spark.
 */
final class FilterTranslation {
  private static final DateTimeFormatter DATETIME = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSSSSS");
  private static final List<String> COMPARISONS = Arrays.asList("=", "<>", "<", "<=", ">", ">=");
  private static final Map<String, String> FLIPPED = new LinkedHashMap<>();

  static {
    FLIPPED.put("=", "=");
    FLIPPED.put("<>", "<>");
    FLIPPED.put("<=>", "<=>");
    FLIPPED.put("<", ">");
    FLIPPED.put("<=", ">=");
    FLIPPED.put(">", "<");
    FLIPPED.put(">=", "<=");
  }

  private final StructType schema;

  FilterTranslation(StructType schema) {
    this.schema = schema;
  }

  /** The conjunct, or null when the service cannot evaluate it exactly. */
  Object translate(Predicate p) {
    return translate(p, false);
  }

  private Object translate(Predicate p, boolean negated) {
    String name = p.name();
    Expression[] c = p.children();
    switch (name) {
      case "AND":
      case "OR": {
        List<Object> parts = new ArrayList<>();
        for (Expression child : c) {
          if (!(child instanceof Predicate)) return null;
          Object t = translate((Predicate) child, negated);
          if (t == null) return null;
          parts.add(t);
        }
        if (name.equals("OR")) return Collections.singletonMap("or", parts);
        // an AND inside OR/NOT: De Morgan keeps it in the filter's own form
        List<Object> negatedParts = new ArrayList<>();
        for (Object part : parts) negatedParts.add(Collections.singletonMap("not", part));
        return Collections.singletonMap("not", Collections.singletonMap("or", negatedParts));
      }
      case "NOT": {
        if (c.length != 1 || !(c[0] instanceof Predicate)) return null;
        Object t = translate((Predicate) c[0], !negated);
        return t == null ? null : Collections.singletonMap("not", t);
      }
      case "IS_NULL":
      case "IS_NOT_NULL": {
        StructField f = column(c, 0);
        return f == null ? null : Arrays.asList(f.name(), name.equals("IS_NULL") ? "is_null" : "is_not_null");
      }
      case "STARTS_WITH": {
        StructField f = column(c, 0);
        if (f == null || !(c[1] instanceof Literal)) return null;
        Object v = value(f.dataType(), ((Literal<?>) c[1]).value());
        return v == null ? null : Arrays.asList(f.name(), "starts_with", v);
      }
      case "IN": {
        StructField f = column(c, 0);
        if (f == null) return null;
        List<Object> values = new ArrayList<>();
        for (int i = 1; i < c.length; i++) {
          if (!(c[i] instanceof Literal)) return null;
          Object literal = ((Literal<?>) c[i]).value();
          if (literal == null) {
            values.add(null); // the service's `in` keeps SQL's three values: NULL makes non-matches NULL
            continue;
          }
          Object v = value(f.dataType(), literal);
          if (v == null) return null; // a value the filter cannot carry
          values.add(v);
        }
        // NULL in, NULL out, under NOT too (store/predicate.py In): the same rows Spark keeps
        return Arrays.asList(f.name(), "in", values);
      }
      default:
        break;
    }
    if (FLIPPED.containsKey(name) && c.length == 2) {
      String op = name;
      Expression left = c[0];
      Expression right = c[1];
      if (left instanceof Literal && right instanceof NamedReference) {
        op = FLIPPED.get(op);
        Expression t = left;
        left = right;
        right = t;
      }
      StructField f = column(new Expression[] {left}, 0);
      if (f == null || !(right instanceof Literal)) return null;
      Object v = value(f.dataType(), ((Literal<?>) right).value());
      if (v == null) return null;
      if (op.equals("<=>")) {
        if (negated) return null; // NOT (x <=> v) keeps NULLs; `!=` would not
        op = "=";                  // with a non-NULL value, <=> keeps exactly the rows = keeps
      }
      if (!COMPARISONS.contains(op)) return null;
      return Arrays.asList(f.name(), op.equals("<>") ? "!=" : op, v);
    }
    return null;
  }

  private StructField column(Expression[] c, int i) {
    if (c.length <= i || !(c[i] instanceof NamedReference)) return null;
    String[] names = ((NamedReference) c[i]).fieldNames();
    if (names.length != 1) return null;
    for (StructField f : schema.fields()) {
      if (f.name().equalsIgnoreCase(names[0])) {
        DataType t = f.dataType();
        if (t instanceof FloatType || t instanceof DoubleType) return null; // NaN orders differently
        return f;
      }
    }
    return null;
  }

  /** A literal as the filter's JSON value for a column of type {@code t}; null when it has none. */
  static Object value(DataType t, Object v) {
    if (v == null) return null;
    if (t instanceof DateType && v instanceof Integer) {
      return LocalDate.ofEpochDay((Integer) v).toString();
    }
    if (t instanceof TimestampNTZType && v instanceof Long) {
      return DATETIME.format(LocalDateTime.ofInstant(micros((Long) v), ZoneOffset.UTC));
    }
    if (t instanceof TimestampType && v instanceof Long) {
      return DATETIME.format(LocalDateTime.ofInstant(micros((Long) v), ZoneOffset.UTC)) + "+00:00";
    }
    if (t instanceof DayTimeIntervalType && v instanceof Long) {
      return v; // TIME as microseconds
    }
    if (t instanceof DecimalType && v instanceof Decimal) {
      return ((Decimal) v).toJavaBigDecimal().toPlainString();
    }
    if (t instanceof BinaryType && v instanceof byte[]) {
      return Collections.singletonMap("hex", HexFormat.of().formatHex((byte[]) v));
    }
    if (v instanceof org.apache.spark.unsafe.types.UTF8String) {
      return v.toString();
    }
    if (v instanceof Byte || v instanceof Short || v instanceof Integer || v instanceof Long || v instanceof Boolean) {
      return v;
    }
    return null;
  }

  private static Instant micros(long us) {
    return Instant.ofEpochSecond(Math.floorDiv(us, 1_000_000L), Math.floorMod(us, 1_000_000L) * 1000L);
  }

  /** Spark's own rendering of pushed predicates, for explain(). */
  static String describe(List<Predicate> predicates) {
    List<String> out = new ArrayList<>();
    for (Predicate p : predicates) out.add(p.toString());
    return "[" + String.join(", ", out) + "]";
  }

  static String lower(String s) {
    return s.toLowerCase(Locale.ROOT);
  }
}
