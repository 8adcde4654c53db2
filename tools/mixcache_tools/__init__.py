"""Python side of MixCache: the shapes dataset, the Wan2.1-architecture reference model, training
and export. The TypeScript runtime (src/) is the inference side; these tools only train and export."""
