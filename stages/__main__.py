import sys

from stages.cli import main
from stages.common.runtime import quiet_native_stderr, use_inference_backend

quiet_native_stderr()
use_inference_backend(sys.argv[1:])
main()
