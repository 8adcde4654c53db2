import assert from "node:assert/strict";
import { MixCacheError } from "../../src/errors.ts";

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

/**
 * Assert max|got - want| <= tol (1 + max|want|) with every `got` value finite, and print the row
 * (`name` padded to `width`). Returns the largest difference.
 */
export function checkClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, width: number): number {
  assert.equal(got.length, want.length, `${name}: length`);
  let diff = 0, scale = 0;
  for (let i = 0; i < got.length; i++) {
    assert.ok(Number.isFinite(got[i]), `${name}: non-finite value at ${i}`);
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  console.log(`  ${name.padEnd(width)} max|diff| ${diff.toExponential(2)}  max|ref| ${scale.toFixed(3)}  tol ${(tol * (1 + scale)).toExponential(1)}`);
  assert.ok(diff <= tol * (1 + scale), `${name}: max diff ${diff} > ${tol} x (1 + ${scale})`);
  return diff;
}

/** An assert.throws / rejects validator: a MixCacheError of `code` whose message matches `re`, with a fix. */
export const isCode = (code: string, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof MixCacheError, `expected a MixCacheError, got ${e}`);
  assert.equal(e.code, code, e.message);
  assert.match(e.message, re);
  assert.ok(e.fix && e.fix.length > 10, "has a fix");
  return true;
};
