/**
 * Batch-1 [C, T, H, W] Float64Array tensors of the VAE references (wanVaeReference.ts,
 * hunyuanVaeReference.ts) and the primitives both use: element-wise ops, concatenation, cropping
 * and diffusers' blend_v / blend_h.
 */
export interface T4 {
  c: number;
  t: number;
  h: number;
  w: number;
  d: Float64Array;
}

export const zeros = (c: number, t: number, h: number, w: number): T4 => ({ c, t, h, w, d: new Float64Array(c * t * h * w) });

export function catT(a: T4, b: T4): T4 {
  const y = zeros(a.c, a.t + b.t, a.h, a.w);
  const plane = a.h * a.w;
  for (let c = 0; c < a.c; c++) {
    y.d.set(a.d.subarray(c * a.t * plane, (c + 1) * a.t * plane), c * y.t * plane);
    y.d.set(b.d.subarray(c * b.t * plane, (c + 1) * b.t * plane), (c * y.t + a.t) * plane);
  }
  return y;
}

export function silu(x: T4): T4 {
  const y = zeros(x.c, x.t, x.h, x.w);
  for (let i = 0; i < x.d.length; i++) y.d[i] = x.d[i] / (1 + Math.exp(-x.d[i]));
  return y;
}

export function add(a: T4, b: T4): T4 {
  const y = zeros(a.c, a.t, a.h, a.w);
  for (let i = 0; i < a.d.length; i++) y.d[i] = a.d[i] + b.d[i];
  return y;
}

export function clamp(x: T4): T4 {
  const y = zeros(x.c, x.t, x.h, x.w);
  for (let i = 0; i < x.d.length; i++) y.d[i] = Math.min(1, Math.max(-1, x.d[i]));
  return y;
}

/** Rows [y0, y1) and columns [x0, x1) of every channel and frame. */
export function crop(x: T4, y0: number, y1: number, x0: number, x1: number): T4 {
  const y = zeros(x.c, x.t, y1 - y0, x1 - x0);
  for (let ct = 0; ct < x.c * x.t; ct++)
    for (let r = 0; r < y.h; r++) y.d.set(x.d.subarray((ct * x.h + y0 + r) * x.w + x0, (ct * x.h + y0 + r) * x.w + x1), (ct * y.h + r) * y.w);
  return y;
}

export function catW(a: T4, b: T4): T4 {
  const y = zeros(a.c, a.t, a.h, a.w + b.w);
  for (let r = 0; r < a.c * a.t * a.h; r++) {
    y.d.set(a.d.subarray(r * a.w, (r + 1) * a.w), r * y.w);
    y.d.set(b.d.subarray(r * b.w, (r + 1) * b.w), r * y.w + a.w);
  }
  return y;
}

export function catH(a: T4, b: T4): T4 {
  const y = zeros(a.c, a.t, a.h + b.h, a.w);
  const pa = a.h * a.w;
  const pb = b.h * b.w;
  for (let ct = 0; ct < a.c * a.t; ct++) {
    y.d.set(a.d.subarray(ct * pa, (ct + 1) * pa), ct * (pa + pb));
    y.d.set(b.d.subarray(ct * pb, (ct + 1) * pb), ct * (pa + pb) + pa);
  }
  return y;
}

/** In place on b, like diffusers (b is returned). */
export function blendV(a: T4, b: T4, extent: number): T4 {
  const e = Math.min(a.h, b.h, extent);
  for (let ct = 0; ct < b.c * b.t; ct++)
    for (let y = 0; y < e; y++)
      for (let x = 0; x < b.w; x++) {
        const ib = (ct * b.h + y) * b.w + x;
        b.d[ib] = a.d[(ct * a.h + a.h - e + y) * a.w + x] * (1 - y / e) + b.d[ib] * (y / e);
      }
  return b;
}

export function blendH(a: T4, b: T4, extent: number): T4 {
  const e = Math.min(a.w, b.w, extent);
  for (let r = 0; r < b.c * b.t * b.h; r++)
    for (let x = 0; x < e; x++) {
      const ib = r * b.w + x;
      b.d[ib] = a.d[r * a.w + a.w - e + x] * (1 - x / e) + b.d[ib] * (x / e);
    }
  return b;
}

/**
 * diffusers' tiled decode after the tiles are decoded: each tile blended with the one above and
 * the one to its left over the overlap, cropped to the stride, the rows joined, the whole cropped
 * to height x width.
 */
export function stitchTiles(rows: T4[][], blendHgt: number, blendWid: number, strideH: number, strideW: number, height: number, width: number): T4 {
  const resultRows: T4[] = [];
  for (let i = 0; i < rows.length; i++) {
    const parts: T4[] = [];
    for (let j = 0; j < rows[i].length; j++) {
      let tile = rows[i][j];
      if (i > 0) tile = blendV(rows[i - 1][j], tile, blendHgt);
      if (j > 0) tile = blendH(rows[i][j - 1], tile, blendWid);
      parts.push(crop(tile, 0, Math.min(strideH, tile.h), 0, Math.min(strideW, tile.w)));
    }
    resultRows.push(parts.reduce((a, b) => catW(a, b)));
  }
  const full = resultRows.reduce((a, b) => catH(a, b));
  return crop(full, 0, Math.min(full.h, height), 0, Math.min(full.w, width));
}
