"""The pipeline description: the spec, every op, presets and the keyed random draws. Pure data;
imports neither torch nor DALI."""
