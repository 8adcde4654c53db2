/**
 * A small, readable ONNX graph builder. Stage builders (src/models/wan/graphs.ts) describe each
 * stage as plain TypeScript calls (`g.matmul(x, w)`, `g.layerNorm(...)`), and `toModel()` serialises
 * the graph to ONNX bytes that onnxruntime loads directly; nothing serialised is checked in.
 */
import { AttrType, DType, DTypeCode, ProtoWriter } from "./proto.ts";
import { toHalf } from "../tensor/f16.ts";

export type Dim = number | string;
export type AttrValue = number | string | number[] | { floats: number[] } | { float: number };

/** A symbolic tensor in the graph under construction. */
export class Value {
  constructor(readonly name: string) {}
}

interface NodeDef {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  domain: string;
}
interface TensorDef {
  name: string;
  dtype: DTypeCode;
  dims: number[];
  raw: Uint8Array;
}
interface IoDef {
  name: string;
  dtype: DTypeCode;
  shape: Dim[];
}

const OPSET = 17;
/** onnxruntime's contrib operator domain (docs/ContribOperators.md in microsoft/onnxruntime). */
export const MS_DOMAIN = "com.microsoft";

export class Graph {
  private nodes: NodeDef[] = [];
  private inits: TensorDef[] = [];
  private ins: IoDef[] = [];
  private outs: IoDef[] = [];
  private counter = 0;
  private constCache = new Map<string, Value>();
  /** Opset imports: the default domain at OPSET unless raised, plus every domain an op used. */
  private opsets = new Map<string, number>([["", OPSET]]);
  private weightNames = new Map<string, number>();

  constructor(readonly name: string) {}

  /** Import `domain` at `version` (at least; an op of another domain imports it at version 1). */
  useOpset(domain: string, version: number): void {
    this.opsets.set(domain, Math.max(version, this.opsets.get(domain) ?? 0));
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, shape: Dim[], dtype: DTypeCode = DType.FLOAT): Value {
    this.ins.push({ name, dtype, shape });
    return new Value(name);
  }

  /** Mark `v` as a graph output named `name` (an Identity node gives it that name). */
  output(v: Value, name: string, shape: Dim[], dtype: DTypeCode = DType.FLOAT): void {
    this.nodes.push({ op: "Identity", inputs: [v.name], outputs: [name], attrs: {}, domain: "" });
    this.outs.push({ name, dtype, shape });
  }

  /**
   * Precision of the matrix products `linear()` builds (layers.ts): "float32", or "float16" (the
   * weight stored as float16 and the product computed in float16 between two Casts; the rest of
   * the graph stays float32, like torch autocast's linear layers).
   */
  linearDtype: "float32" | "float16" = "float32";

  /** A float16 initializer from float32 values (rounded to nearest, ties to even). */
  weightHalf(name: string, data: Float32Array, dims: number[]): Value {
    return this.initializer(name, data, dims, DType.FLOAT16, () => {
      const h = toHalf(data);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    });
  }

  /** Bytes of the initializers registered so far (weights and constants). */
  get initializerBytes(): number {
    return this.inits.reduce((a, t) => a + t.raw.byteLength, 0);
  }

  /** A float32 initializer (weights). The array is referenced, not copied, until toModel(). */
  weight(name: string, data: Float32Array, dims: number[]): Value {
    return this.initializer(name, data, dims, DType.FLOAT, () => new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  /**
   * One initializer per name: a graph that joins several modules (a fused block) reads a shared
   * tensor (scale_shift_table) more than once.
   */
  private initializer(name: string, data: Float32Array, dims: number[], dtype: DTypeCode, raw: () => Uint8Array): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new Error(`initializer ${name}: ${data.length} values for dims [${dims}]`);
    const seen = this.weightNames.get(name);
    if (seen !== undefined) {
      if (seen !== n) throw new Error(`initializer ${name} registered twice with different sizes`);
      return new Value(name);
    }
    this.weightNames.set(name, n);
    this.inits.push({ name, dtype, dims, raw: raw() });
    return new Value(name);
  }

  /** An int64 constant (shapes, axes), deduplicated. */
  i64(values: number[]): Value {
    const key = `i64:${values.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const arr = new BigInt64Array(values.map((v) => BigInt(v)));
    const name = this.fresh("c_i64");
    this.inits.push({ name, dtype: DType.INT64, dims: [values.length], raw: new Uint8Array(arr.buffer) });
    const v = new Value(name);
    this.constCache.set(key, v);
    return v;
  }

  /** A float32 scalar or vector constant, deduplicated. */
  f32(values: number | number[]): Value {
    const list = typeof values === "number" ? [values] : values;
    const key = `f32:${typeof values === "number" ? "s" : "v"}:${list.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const arr = new Float32Array(list);
    const name = this.fresh("c_f32");
    this.inits.push({ name, dtype: DType.FLOAT, dims: typeof values === "number" ? [] : [list.length], raw: new Uint8Array(arr.buffer) });
    const v = new Value(name);
    this.constCache.set(key, v);
    return v;
  }

  op(op: string, inputs: (Value | null)[], attrs: Record<string, AttrValue> = {}, nOut = 1, domain = ""): Value[] {
    const outs = Array.from({ length: nOut }, () => this.fresh(op.toLowerCase()));
    if (domain && !this.opsets.has(domain)) this.opsets.set(domain, 1);
    this.nodes.push({ op, inputs: inputs.map((v) => (v ? v.name : "")), outputs: outs, attrs, domain });
    return outs.map((o) => new Value(o));
  }
  op1(op: string, inputs: (Value | null)[], attrs: Record<string, AttrValue> = {}): Value {
    return this.op(op, inputs, attrs, 1)[0];
  }

  // ---- elementwise and shape helpers (ONNX opset 17 semantics) ----
  add(a: Value, b: Value): Value { return this.op1("Add", [a, b]); }
  sub(a: Value, b: Value): Value { return this.op1("Sub", [a, b]); }
  mul(a: Value, b: Value): Value { return this.op1("Mul", [a, b]); }
  div(a: Value, b: Value): Value { return this.op1("Div", [a, b]); }
  matmul(a: Value, b: Value): Value { return this.op1("MatMul", [a, b]); }
  sigmoid(a: Value): Value { return this.op1("Sigmoid", [a]); }
  tanh(a: Value): Value { return this.op1("Tanh", [a]); }
  sqrt(a: Value): Value { return this.op1("Sqrt", [a]); }
  reshape(a: Value, shape: number[]): Value { return this.op1("Reshape", [a, this.i64(shape)]); }
  transpose(a: Value, perm: number[]): Value { return this.op1("Transpose", [a], { perm }); }
  softmax(a: Value, axis = -1): Value { return this.op1("Softmax", [a], { axis }); }
  concat(vs: Value[], axis: number): Value { return this.op1("Concat", vs, { axis }); }
  reduceMean(a: Value, axes: number[], keepdims = 1): Value { return this.op1("ReduceMean", [a], { axes, keepdims }); }
  /** Slice along one axis: [start, end). */
  slice(a: Value, axis: number, start: number, end: number): Value {
    return this.op1("Slice", [a, this.i64([start]), this.i64([end]), this.i64([axis])]);
  }

  /** Serialise to ONNX ModelProto bytes (IR version 8, default domain opset 17; IR 10 when an
   * opset above 20 is imported, as onnx's version table pairs them). */
  toModel(): Uint8Array {
    const g = new ProtoWriter();
    for (const n of this.nodes) g.message(1, encodeNode(n));
    g.string(2, this.name);
    for (const t of this.inits) g.message(5, encodeTensor(t));
    for (const i of this.ins) g.message(11, encodeValueInfo(i));
    for (const o of this.outs) g.message(12, encodeValueInfo(o));
    const m = new ProtoWriter();
    m.int(1, (this.opsets.get("") ?? OPSET) > 20 ? 10 : 8); // ir_version
    m.string(2, "mixcache");
    m.message(7, g);
    for (const [domain, version] of this.opsets) m.message(8, new ProtoWriter().string(1, domain).int(2, version));
    return m.finish();
  }

  /** Number of nodes (for tests and docs). */
  get size(): number {
    return this.nodes.length;
  }
}

function encodeNode(n: NodeDef): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.outputs[0]);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs)) w.message(5, encodeAttr(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function encodeAttr(name: string, v: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use {float: x} for float attributes`);
    w.int(3, v).int(20, AttrType.INT);
  } else if (typeof v === "string") {
    w.string(4, v).int(20, AttrType.STRING);
  } else if (Array.isArray(v)) {
    for (const x of v) w.int(8, x);
    w.int(20, AttrType.INTS);
  } else if ("float" in v) {
    w.float(2, v.float).int(20, AttrType.FLOAT);
  } else {
    for (const x of v.floats) w.float(7, x);
    w.int(20, AttrType.FLOATS);
  }
  return w;
}

function encodeTensor(t: TensorDef): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dtype);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

function encodeValueInfo(io: IoDef): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of io.shape) {
    const dim = new ProtoWriter();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, io.dtype).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, io.name).message(2, type);
}
