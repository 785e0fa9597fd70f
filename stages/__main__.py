"""`python -m stages` and the `stages` command: the process's settings, then the CLI."""

import sys


def run() -> None:
    from stages.cli import main
    from stages.common.runtime import (
        keep_freed_memory,
        quiet_native_stderr,
        use_inference_backend,
    )

    quiet_native_stderr()
    use_inference_backend(sys.argv[1:])
    keep_freed_memory(sys.argv[1:])
    main()


if __name__ == "__main__":
    run()
