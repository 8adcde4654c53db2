/**
 * A transformer family as the denoising loop sees it. The loop (pipeline/denoise.ts) and every
 * cache strategy work only through this interface and the block/module declarations below, so a
 * new family (Wan2.1, HunyuanVideo, ...) is one folder under models/ plus one registry line.
 *
 * The hidden state the seams carry is one row-major Float32Array of tokens x dim. A family with
 * two streams (HunyuanVideo's image and text tokens) carries both in it, image tokens first; the
 * family's modules split it as they need.
 */
import type { LatentShape } from "./types.ts";

/** What a module does, so strategies can pick modules by role instead of by a family's names. */
export type ModuleRole =
  | "self-attn" //   attention over the video tokens (Wan sa)
  | "cross-attn" //  video tokens attend to text tokens (Wan ca)
  | "joint-attn" //  attention over the joined video + text tokens (HunyuanVideo)
  | "mlp"; //        token-wise feed-forward

export interface ModuleDecl {
  readonly name: string;
  readonly role: ModuleRole;
}

/**
 * One block's modules in execution order. Sequential (the default): each module sees the hidden
 * state with the residuals of the modules before it added. Parallel (HunyuanVideo's single-stream
 * block): every module sees the block input, and the block adds all their residuals.
 */
export interface BlockDecl {
  readonly kind: string;
  readonly modules: readonly ModuleDecl[];
  readonly parallel?: boolean;
}

/** Text conditioning as the family takes it; families read the parts they use. */
export interface PromptInput {
  /** [S, text_dim] row-major */
  data: Float32Array;
  tokens: number;
  /** [S], 1 for a real token and 0 for padding (absent: every token is real). */
  mask?: Uint8Array;
  /** Pooled text vector (HunyuanVideo: CLIP-L pooled output, [pooled_projection_dim]). */
  pooled?: Float32Array;
}

/** What the family computed from one prompt, once per run (text projections, cross-attn K/V...). */
export interface PromptHandle {
  /** Text tokens the model attends to (after trimming padding, where the family does). */
  readonly S: number;
}

/** Grid-specific state (RoPE tables, patch/head sessions), built once per latent size. */
export interface GridHandle {
  readonly grid: [number, number, number];
  /** Video tokens. */
  readonly L: number;
}

/**
 * Per-step conditioning. `temb` is the family's timestep embedding before the block modulation and
 * `tproj` the modulation input the blocks read (Wan: time_proj output [6, D]; families without a
 * separate projection repeat temb). TeaCache/MagCache-style strategies read them as proxies.
 */
export interface TimeOut {
  temb: Float32Array;
  tproj: Float32Array;
}

/** Exact MACs (matmuls only) of every call the loop makes, for one grid and prompt length. */
export interface FamilyMacs {
  /** once per step: the time path */
  time: number;
  /** once per step when a branch computes, shared by the branches: the patch embedding */
  patch: number;
  /** once per branch per step, before the blocks (HunyuanVideo: token refiner and pooled text) */
  branchIn: number;
  /** module[b][m]: block b, module m of blocks[b].modules */
  module: number[][];
  /** once per branch per step: output norm, projection */
  head: number;
  /** once per prompt per run */
  prompt: number;
}

/** What a module does in a planned block (a module cache's decision, pipeline/hooks.ts
 * planModules): use this residual without computing, compute it and return its residual
 * ("keep"), or compute it for the block only. */
export type ModulePlan = Float32Array | "keep" | "compute";

/** A block run in one call: the residual of each module asked for (null for the others), and the block output. */
export interface BlockModulesOut {
  residuals: (Float32Array | null)[];
  out: Float32Array;
}

export interface DiTModel {
  readonly family: string;
  readonly inChannels: number;
  /** Hidden width D of the tokens the seams carry. */
  readonly dim: number;
  readonly blocks: readonly BlockDecl[];
  /** Patch grid of a latent of frames x height x width (each divisible by the patch); throws a ConfigError naming the fix. */
  gridFor(frames: number, height: number, width: number): [number, number, number];
  prepareGrid(grid: [number, number, number]): Promise<GridHandle>;
  encodePrompt(p: PromptInput): Promise<PromptHandle>;
  /** Once per step, shared by both branches. */
  time(t: number, guidance: number): Promise<TimeOut>;
  /** Once per step, shared: latent [C, F, H, W] -> video tokens [L, D]. */
  patch(g: GridHandle, latent: Float32Array): Promise<Float32Array>;
  /** Once per branch: the hidden state the blocks start from ([L + text, D] for two-stream
   * families) and the branch's conditioning (HunyuanVideo adds the pooled text). */
  branchIn(g: GridHandle, tokens: Float32Array, time: TimeOut, p: PromptHandle, t: number): Promise<{ h: Float32Array; time: TimeOut }>;
  /** Block b, module m (index into blocks[b].modules): hidden state -> residual contribution. */
  module(b: number, m: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array>;
  /**
   * Optional: blocks [from, to) on hidden state h -> the hidden state after them, in as few calls as
   * the family can (Wan: one session per block). The loop calls it only where no strategy hooks a
   * module (and, for more than one block, none hooks a block); it must equal running every module
   * through `module` and adding the residuals, bit for bit.
   */
  runBlocks?(from: number, to: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array>;
  /** Hidden state after the last block -> velocity [C, F, H, W]. */
  head(g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle): Promise<Float32Array>;
  macs(g: GridHandle, p: PromptHandle): FamilyMacs;
  /** Optional: block b in one fused call, bit-identical to calling `module` for each module in
   * turn and adding the residuals. Per module, `plan[m]` is a residual to use instead of computing
   * it (a cache's reuse), "keep" (compute it and return its residual) or "compute". Null when the
   * family has no such call for this combination (the loop then calls the modules one by one). */
  blockModules?(b: number, g: GridHandle, h: Float32Array, time: TimeOut, p: PromptHandle, plan: readonly ModulePlan[]): Promise<BlockModulesOut | null>;
  release(): Promise<void>;
}

export type { LatentShape };
