"""Shared plumbing every layer may import (wire formats, process helpers); it imports nothing of the package."""
