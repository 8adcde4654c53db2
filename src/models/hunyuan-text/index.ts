/**
 * HunyuanVideo's text encoders (LLaVA-Llama-3-8B and CLIP-L, transformers LlamaModel and
 * CLIPTextModel) and HunyuanVideoPipeline's prompt handling: what a loader needs.
 */
export {
  HunyuanTextEncoder,
  checkHunyuanTextDims,
  hunyuanTextMemory,
  type HunyuanEncodeOptions,
  type HunyuanPromptEmbedding,
  type HunyuanTextComponentInfo,
  type HunyuanTextInfo,
  type HunyuanTextEncoderOptions,
  type HunyuanTextMemory,
  type HunyuanTextMemoryOptions,
} from "./hunyuan-text.ts";
export {
  CLIP_MAX_LENGTH,
  ClipPromptTokenizer,
  HUNYUAN_HIDDEN_LAYERS_TO_SKIP,
  HUNYUAN_MAX_SEQUENCE_LENGTH,
  HUNYUAN_PROMPT_TEMPLATE,
  LlamaPromptTokenizer,
  formatTemplate,
  type PromptTemplate,
} from "./tokenizers.ts";
export { LlamaTextEncoder, type LlamaForwardOptions, type LlamaInput } from "./llama-encoder.ts";
export { ClipTextEncoder, type ClipForwardOptions, type ClipOutput } from "./clip-encoder.ts";
export { LLAVA_LLAMA3_8B, llamaParameterCount, parseLlamaConfig, readLlamaConfig, type LlamaTextConfig } from "./llama-config.ts";
export { CLIP_L, clipParameterCount, clipPoolIndex, parseClipTextConfig, readClipTextConfig, type ClipTextConfig } from "./clip-config.ts";
export type { LayerTiming, StreamOptions, WeightSource } from "./stream.ts";
export { benchLlamaEncoder, type LlamaBenchOptions, type LlamaBenchResult } from "./bench.ts";
