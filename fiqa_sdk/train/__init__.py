"""Training: the extended DDPM of DifFIQA (:mod:`.ddpm`) and its aligned-face data (:mod:`.data`)."""
