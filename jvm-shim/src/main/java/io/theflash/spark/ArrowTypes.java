package io.theflash.spark;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.Channels;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.apache.arrow.vector.ipc.ReadChannel;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.DateUnit;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The service's Arrow types as Spark types, one to one (the table in docs/architecture.md and
 * pyspark_theflash/schema/spark.py): what ArrowColumnVector reads without conversion.
 */
public final class ArrowTypes {
  private ArrowTypes() {}

  /** A schema sent as an Arrow IPC message, base64 (the session's and the table's arrow_schema). */
  public static Schema decodeSchema(String base64) {
    byte[] bytes = Base64.getDecoder().decode(base64);
    try (ReadChannel in = new ReadChannel(Channels.newChannel(new ByteArrayInputStream(bytes)))) {
      return MessageSerializer.deserializeSchema(in);
    } catch (IOException e) {
      throw new UncheckedIOException("the service's Arrow schema cannot be read", e);
    }
  }

  public static StructType sparkSchema(Schema schema) {
    List<StructField> fields = new ArrayList<>();
    for (Field f : schema.getFields()) {
      fields.add(DataTypes.createStructField(f.getName(), sparkType(f), f.isNullable()));
    }
    return DataTypes.createStructType(fields);
  }

  public static DataType sparkType(Field field) {
    ArrowType t = field.getType();
    if (t instanceof ArrowType.Int) {
      ArrowType.Int i = (ArrowType.Int) t;
      if (i.getIsSigned()) {
        switch (i.getBitWidth()) {
          case 8: return DataTypes.ByteType;
          case 16: return DataTypes.ShortType;
          case 32: return DataTypes.IntegerType;
          case 64: return DataTypes.LongType;
          default: break;
        }
      }
    } else if (t instanceof ArrowType.FloatingPoint) {
      FloatingPointPrecision p = ((ArrowType.FloatingPoint) t).getPrecision();
      if (p == FloatingPointPrecision.SINGLE) return DataTypes.FloatType;
      if (p == FloatingPointPrecision.DOUBLE) return DataTypes.DoubleType;
    } else if (t instanceof ArrowType.Bool) {
      return DataTypes.BooleanType;
    } else if (t instanceof ArrowType.Decimal) {
      ArrowType.Decimal d = (ArrowType.Decimal) t;
      if (d.getBitWidth() == 128) return DataTypes.createDecimalType(d.getPrecision(), d.getScale());
    } else if (t instanceof ArrowType.Date) {
      if (((ArrowType.Date) t).getUnit() == DateUnit.DAY) return DataTypes.DateType;
    } else if (t instanceof ArrowType.Timestamp) {
      ArrowType.Timestamp ts = (ArrowType.Timestamp) t;
      if (ts.getUnit() == TimeUnit.MICROSECOND) {
        return ts.getTimezone() == null ? DataTypes.TimestampNTZType : DataTypes.TimestampType;
      }
    } else if (t instanceof ArrowType.Duration) {
      if (((ArrowType.Duration) t).getUnit() == TimeUnit.MICROSECOND) return DataTypes.createDayTimeIntervalType();
    } else if (t instanceof ArrowType.Utf8) {
      return DataTypes.StringType;
    } else if (t instanceof ArrowType.Binary) {
      return DataTypes.BinaryType;
    }
    throw new IllegalArgumentException("column " + field.getName() + " has Arrow type " + t
        + ", which the theflash connector does not map to a Spark type");
  }
}
