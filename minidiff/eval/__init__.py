"""Measuring samples: 2D distances to the data (`metrics`), the MNIST classifier (`classifier`),
classifier FID (`fid`), the numbers of guidance's trade-off (`guidance`), spectral distance and a clip
classifier for sound (`sound`), bond lengths and validity of conformers (`molecules`), precision and recall
by k nearest neighbours (`coverage`), the Classification Accuracy Score (`cas`) and the nearest-neighbour
memorisation share (`memorisation`)."""
