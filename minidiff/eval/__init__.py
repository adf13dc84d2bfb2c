"""Measuring samples: 2D distances to the data (`metrics`), the MNIST classifier (`classifier`),
classifier FID (`fid`), and the numbers of guidance's trade-off (`guidance`)."""
