/**
 * What a text encoder hands the transformer: the prompt embedding. A leaf, so the text encoders,
 * the models and the pipeline all share it without importing each other.
 */
export interface TextEmbedding {
  /** [S, text_dim] row-major */
  data: Float32Array;
  tokens: number;
}
