"""Typed errors of the pipeline. Each message says what was wrong and what to do about it."""


class S3DNeRFError(ValueError):
    """Base class of every input error the pipeline, the CLI and the app report to users."""


class InvalidImageError(S3DNeRFError):
    """The image could not be read or has an unsupported shape or type."""


class InvalidAudioError(S3DNeRFError):
    """The audio could not be decoded, is empty, silent-only where speech is needed, or too long."""


class FaceNotFoundError(S3DNeRFError):
    """No face was found in the portrait."""


class FaceTooSmallError(S3DNeRFError):
    """The face in the portrait is too small to animate."""


class InvalidPoseError(S3DNeRFError):
    """Head pose arguments are out of range or do not match the number of frames."""


class InvalidVideoError(S3DNeRFError):
    """A video could not be read or holds no decodable video stream."""


class OutputTooLargeError(S3DNeRFError):
    """The frames asked for, held together as one result, would not fit in memory; nothing was rendered.

    Attributes:
        bytes_needed: what the whole result would take.
        bytes_allowed: what one call may hold (half of the memory available when it was asked for).
    """

    def __init__(self, message: str, bytes_needed: int, bytes_allowed: int):
        super().__init__(message)
        self.bytes_needed = bytes_needed
        self.bytes_allowed = bytes_allowed
