"""Clips: video files and animated GIF/WebP, cut frame by frame with the photo pipeline.

``probe`` says whether a file is a clip and checks it against the limits before a frame is
decoded; ``frames`` decodes upright frames with their presentation times; ``writers``
encodes the results (WebM VP9 and MOV ProRes 4444 with alpha, animated WebP/GIF, H.264 MP4
on a background, a ZIP of PNG frames); ``smoothing`` steadies the masks between frames;
``clip`` runs them together. Import each from its module: the package loads nothing, so
what needs only ``probe`` or ``formats`` (every photo's worker, the upload path) does not
load FFmpeg's libraries (PyAV).
"""
