/**
 * A full garbage collection on demand, for code that streams large weights through JS arrays (the
 * Wan2.1 transformer stage by stage, the umT5 encoder layer by layer): the JS copies of one part's
 * weights (read, transposed, serialised) are freed before the next part is read, instead of V8
 * letting them pile up while onnxruntime holds its own copy. Uses global.gc when node runs with
 * --expose-gc, else enables it at run time.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

let gcFn: (() => void) | null = null;

/** Run a full (major) garbage collection now. */
export function collectGarbage(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      setFlagsFromString("--expose-gc");
      gcFn = runInNewContext("gc") as () => void;
    }
  }
  gcFn();
}
