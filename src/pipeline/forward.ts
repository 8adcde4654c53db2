/**
 * One transformer call, for debugging and interop: the model output (velocity) for a latent, a
 * timestep and a prompt embedding, exactly as the denoising loop computes one uncached branch
 * (pipeline/denoise.ts: time path, patch embedding, branch input, every block's modules in the
 * family's order, head). Compare it with one diffusers transformer call on the same inputs.
 */
import { ConfigError } from "../errors.ts";
import type { DiTModel, PromptInput } from "../models/family.ts";
import type { LatentShape } from "../models/types.ts";
import { add } from "../tensor/ops.ts";

export interface ForwardOptions {
  model: DiTModel;
  /** [C, F, H, W] */
  latent: Float32Array;
  shape: LatentShape;
  /** the transformer's timestep input (0..1000) */
  timestep: number;
  text: PromptInput;
  /** the embedded guidance input of families that have one (HunyuanVideo; default 6.0); ignored by Wan */
  embeddedGuidance?: number;
}

/** The model output [C, F, H, W] of one forward call. */
export async function forward(o: ForwardOptions): Promise<Float32Array> {
  const { model, shape } = o;
  if (shape.channels !== model.inChannels) throw new ConfigError(`latent has ${shape.channels} channels, the model takes ${model.inChannels}`);
  const n = shape.channels * shape.frames * shape.height * shape.width;
  if (o.latent.length !== n) throw new ConfigError(`latent has ${o.latent.length} values, [${shape.channels}, ${shape.frames}, ${shape.height}, ${shape.width}] needs ${n}`);
  if (!Number.isFinite(o.timestep)) throw new ConfigError(`timestep must be a finite number, got ${o.timestep}`, "pass the scheduler's timestep, e.g. 999");
  const g = await model.prepareGrid(model.gridFor(shape.frames, shape.height, shape.width));
  const p = await model.encodePrompt(o.text);
  const time = await model.time(o.timestep, o.embeddedGuidance ?? 6);
  const tokens = await model.patch(g, o.latent);
  const input = await model.branchIn(g, tokens, time, p, o.timestep);
  let h = input.h;
  for (let b = 0; b < model.blocks.length; b++) {
    const decl = model.blocks[b];
    const hIn = h;
    for (let m = 0; m < decl.modules.length; m++) h = add(h, await model.module(b, m, g, decl.parallel ? hIn : h, input.time, p));
  }
  return model.head(g, h, input.time, p);
}
