/**
 * Loopback network helpers shared by the serve load test (bench/serve-procs.ts) and the serve tests
 * (test/support/serve.ts). Like the rest of bench/, nothing here imports src/.
 */
import { createServer } from "node:net";

/** A TCP port nothing listens on right now (on 127.0.0.1). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
