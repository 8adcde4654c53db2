/**
 * Minimal protobuf writer for the subset of onnx.proto that MixCache's graph builder emits
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto). Field numbers
 * follow onnx/onnx.proto (IR version 8). Only what we write is implemented: varints, length-delimited
 * fields, fixed32 floats.
 */

export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(256);
  private pos = 0;
  private total = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.flush();
    if (n > this.cur.length) this.cur = new Uint8Array(Math.max(n, 256));
  }
  private flush(): void {
    if (this.pos > 0) {
      this.chunks.push(this.cur.slice(0, this.pos));
      this.total += this.pos;
      this.pos = 0;
    }
  }
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    this.ensure(10);
    while (x >= 0x80n) {
      this.cur[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.cur[this.pos++] = Number(x);
    return this;
  }
  tag(field: number, wire: 0 | 1 | 2 | 5): this {
    return this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint): this {
    return this.tag(field, 0).varint(v);
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    this.ensure(4);
    new DataView(this.cur.buffer, this.cur.byteOffset + this.pos, 4).setFloat32(0, v, true);
    this.pos += 4;
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    if (b.length > 4096) {
      // large payloads (weights) are referenced, not copied into the scratch buffer
      this.flush();
      this.chunks.push(b);
      this.total += b.length;
    } else {
      this.ensure(b.length);
      this.cur.set(b, this.pos);
      this.pos += b.length;
    }
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  /** Embed a nested message without copying its chunks (weights stay referenced until finish()). */
  message(field: number, m: ProtoWriter): this {
    m.flush();
    this.tag(field, 2).varint(m.total);
    this.flush();
    for (const c of m.chunks) this.chunks.push(c);
    this.total += m.total;
    return this;
  }
  finish(): Uint8Array {
    this.flush();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.total);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** onnx.TensorProto.DataType values used here. */
export const DType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;
export type DTypeCode = (typeof DType)[keyof typeof DType];

/** onnx.AttributeProto.AttributeType values. */
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;
