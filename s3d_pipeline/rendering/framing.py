"""The face framing the model is trained on, shared by the synthetic corpus and real-photo alignment.

In a frontal view at the default camera (see :mod:`s3d_pipeline.rendering.cameras`), the midpoint of the two
eye centres lies at ``EYE_CENTER`` and the mouth centre at ``MOUTH_CENTER`` (normalized image coordinates,
x right, y down). Real photos are aligned to this framing by a similarity transform; synthetic heads are
built so that their frontal render matches it.
"""

EYE_CENTER = (0.5, 0.42)
MOUTH_CENTER = (0.5, 0.68)
# Eye-centre to mouth-centre distance as a fraction of the image height.
EYE_TO_MOUTH = MOUTH_CENTER[1] - EYE_CENTER[1]
# Mouth box (x0, y0, x1, y1), normalized, that the lip-sync discriminator looks at: the mouth, centred, with room
# for the head turns of the synthetic corpus (over 3,750 frames of 50 training identities the mouth landmarks stay
# within x 0.33-0.67 and y 0.59-0.80 at the 1st/99th percentiles) and little else, so lip motion is most of what changes in the crop.
LOWER_FACE_BOX = (0.28, 0.56, 0.72, 0.84)
