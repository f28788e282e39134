"""Data: MUSDB18/-HQ preparation, the built-in corpus, extra stems, training-set shaping, datasets."""
