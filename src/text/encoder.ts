/**
 * The reference model's text encoder: token embedding + learned position embedding, with exactly
 * zero rows at padding positions (as Wan's zero-padded umT5 output). Mirrors TextEncoder in
 * tools/mixcache_tools/wan.py. Output: [S, text_dim] row-major.
 */
import type { TextEmbedding } from "./types.ts";
import { MixCacheError } from "../errors.ts";

export class EmbeddingTextEncoder {
  constructor(
    private readonly tokenEmbedding: Float32Array, // [V, text_dim]
    private readonly positionEmbedding: Float32Array, // [S, text_dim]
    readonly vocabSize: number,
    readonly maxTokens: number,
    readonly textDim: number,
  ) {
    if (tokenEmbedding.length !== vocabSize * textDim || positionEmbedding.length !== maxTokens * textDim)
      throw new MixCacheError("WEIGHTS", "text encoder weights do not match its config", "re-export the model with tools/export.py");
  }

  encode(ids: Int32Array): TextEmbedding {
    const D = this.textDim;
    const out = new Float32Array(this.maxTokens * D);
    for (let s = 0; s < this.maxTokens; s++) {
      const id = ids[s] ?? 0;
      if (id === 0) continue;
      if (id < 0 || id >= this.vocabSize) throw new MixCacheError("VOCAB", `token id ${id} out of range`);
      for (let e = 0; e < D; e++) out[s * D + e] = Math.fround(this.tokenEmbedding[id * D + e] + this.positionEmbedding[s * D + e]);
    }
    return { data: out, tokens: this.maxTokens };
  }
}
