"""The corpus engine: scenes, sources, degradations, corpora and datasets."""

#: The corpus engine's rendering version: bumped whenever the same config and seed render other audio
#: (a changed default, a fixed artefact), so that tables cached from its output (the quality recipe's
#: synthetic sweeps, the predictor recipe's splits) are made again instead of read back.
#: 1: the engine of the thirty-first session (a changed room keeps its diffuse tail, an RT60 below the
#: room's shortest renders at that shortest, the causal MagLS decoder of via-ambisonics rendering).
#: 2: via-ambisonics binaural rendering (``scene.binaural_rendering: magls``) with the MagLS cutoff where the
#: order resolves the head (thirty-third session); the default direct HRIR rendering is unchanged.
ENGINE_VERSION = 2
