# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The commands of the `avigate` program (`modeling_avigate.cli`), one module each.

Every module defines `NAME_command_parser(subparsers)`, which adds the command's parser to the `avigate` parser and
sets its handler `NAME_command(args)`. Building a parser imports nothing heavy: torch, transformers and the rest are
imported by the handlers, so `avigate --help` answers at once.
"""
