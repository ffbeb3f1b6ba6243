"""The DALI engine: a DALI pipeline fed by fastload's sampler (``external_source``), or by DALI's
own readers (``backend="dali-native"``). DALI is imported only inside these modules' functions."""
