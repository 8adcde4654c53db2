/**
 * Embedded models by name (`--model reference|textures|DIR`): names resolve to models/NAME, paths
 * stay paths, and a missing embedded model says how to make it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { MODEL_NAMES, PACKAGE_ROOT, inspectModel, resolveModelDir } from "../src/models/load.ts";
import { MixCacheError } from "../src/errors.ts";

test("model names resolve to the embedded folders; anything else is a path", () => {
  assert.deepEqual([...MODEL_NAMES], ["reference", "textures"]);
  assert.equal(resolveModelDir("reference"), join(PACKAGE_ROOT, "models", "reference"));
  assert.equal(resolveModelDir("textures"), join(PACKAGE_ROOT, "models", "textures"));
  assert.equal(resolveModelDir(), join(PACKAGE_ROOT, "models", "reference"));
  assert.equal(resolveModelDir("./textures"), resolve("textures"), "./NAME reaches a local folder of that name");
  assert.equal(resolveModelDir("/tmp/some/model"), "/tmp/some/model");
});

test("inspectModel by name reads the embedded model; a missing one names the training command", () => {
  for (const name of MODEL_NAMES) {
    const dir = join(PACKAGE_ROOT, "models", name);
    if (existsSync(dir)) {
      const info = inspectModel(name);
      assert.equal(info.dir, dir);
      assert.ok(info.hasTextEncoder, `${name} ships its text encoder`);
    } else {
      assert.throws(() => inspectModel(name), (e: unknown) => {
        assert.ok(e instanceof MixCacheError && e.code === "MODEL_NOT_FOUND", String(e));
        assert.match((e as Error).message, new RegExp(`embedded ${name} model`));
        assert.match((e as Error).message, /tools\/train\.py/);
        return true;
      });
    }
  }
  assert.throws(() => inspectModel("/nonexistent/model/dir"), /does not exist[\s\S]*reference or textures/);
});
