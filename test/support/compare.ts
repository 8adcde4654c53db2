import assert from "node:assert/strict";

/** Largest |got - want| and largest |want| over two equally long arrays; every `got` value must be finite. */
export function maxDiff(got: ArrayLike<number>, want: ArrayLike<number>): { diff: number; scale: number } {
  assert.equal(got.length, want.length, "length mismatch");
  let diff = 0, scale = 0;
  for (let i = 0; i < got.length; i++) {
    assert.ok(Number.isFinite(got[i]), `non-finite value at ${i}`);
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { diff, scale };
}
