/**
 * MixCache public API (re-exports only). The package runs TypeScript through tsx, so import it from
 * a TypeScript-aware runtime (e.g. `node --import tsx`).
 */
export { loadModel, inspectModel, DEFAULT_MODEL_DIR, type LoadedModel, type LoadOptions, type ModelInfo } from "./models/load.ts";
export { generate, type GenerateOptions, type GenerateResult, type Progress, type Video } from "./pipeline/generate.ts";
export {
  WAN_NEGATIVE_PROMPT, inspectWanPipeline, latentForVideo, videoForLatent, estimatePipelineMemory, checkPipelineMemory,
  type WanPipelineInfo, type ComponentInfo, type VideoSize,
} from "./models/wan-pipeline.ts";
export { readEmbedding, readLatents, writeResultSafetensors } from "./pipeline/interop.ts";
export { denoise, type DenoiseOptions } from "./pipeline/denoise.ts";
export { forward, type ForwardOptions } from "./pipeline/forward.ts";
export type { DiTModel, BlockDecl, ModuleDecl, ModuleRole, PromptInput, FamilyMacs } from "./models/family.ts";
export type { FamilyName, FamilyDims, WanModelInfo, HunyuanModelInfo } from "./models/load.ts";
export { HunyuanVideoModel } from "./models/hunyuan/model.ts";
export { parseHunyuanConfig, readHunyuanConfig, type HunyuanConfig } from "./models/hunyuan/config.ts";
export type { LatentShape } from "./models/types.ts";
export type { TextEmbedding } from "./text/types.ts";
export type { Hooks, Branch, BranchCtx, StepInfo, RunInfo, CacheStrategy, CacheReport, TraceRow } from "./pipeline/hooks.ts";
export type { RunStats } from "./pipeline/stats.ts";
export { makeCache, describeStrategies, STRATEGIES } from "./cache/registry.ts";
export type { StrategyDef } from "./cache/strategy.ts";
export { calibrate, CALIBRATORS } from "./cache/calibrate/index.ts";
export { makeSampler } from "./schedulers/sampler.ts";
export type { Sampler, SamplerName, ApproxMode, SigmaSchedule } from "./schedulers/types.ts";
export { openCheckpoint, openSafetensors, writeSafetensors } from "./weights/safetensors.ts";
export { parseWanConfig, readWanConfig, type WanConfig } from "./models/wan/config.ts";
export { WanModel } from "./models/wan/model.ts";
export { writeVideo } from "./media/write.ts";
export { psnrFrameMean, psnrClip, ssim } from "./metrics/quality.ts";
export { detectAdherence, scoreAdherence } from "./metrics/adherence.ts";
export { MixCacheError, UsageError, ConfigError, WeightsError } from "./errors.ts";
export { loadWanVaeDecoder, WanVaeDecoder, type DecodeOptions as VaeDecodeOptions } from "./models/wan-vae/decoder.ts";
export { WanTextEncoder } from "./models/umt5/wan-text.ts";
export { Umt5Encoder } from "./models/umt5/encoder.ts";
export { HfTokenizer } from "./text/hf-tokenizer.ts";
export { datasetVocab, loadVocab } from "./data/shapes.ts";
export { detectTextureAdherence, scoreTextureAdherence, textureQuality } from "./metrics/texture-adherence.ts";
