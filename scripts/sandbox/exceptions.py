"""Errors the sandbox stand-ins raise for expected failures: short messages naming the thing and the fix."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class: the demo prints the message and stops, without a stack trace."""


class FunctionCodeError(SandboxError):
    """A Lambda function's packaged code cannot be found or unpacked."""


class TemplateResolutionError(SandboxError):
    """An intrinsic function in a stack template cannot be resolved against the deployed stack."""


class CustomResourceError(SandboxError):
    """A custom resource request could not be delivered or was never answered."""


class EventPatternError(SandboxError):
    """An EventBridge pattern uses syntax the emulation does not implement."""
