/**
 * What a text encoder hands the transformer: the prompt embedding. A leaf, so the text encoders,
 * the models and the pipeline all share it without importing each other.
 */
export interface TextEmbedding {
  /** [S, text_dim] row-major */
  data: Float32Array;
  tokens: number;
  /** [S], 1 for a real token and 0 for padding (families that take a mask; absent: all real). */
  mask?: Uint8Array;
  /** A pooled text vector (HunyuanVideo: CLIP-L's pooled output, [768]). */
  pooled?: Float32Array;
}
