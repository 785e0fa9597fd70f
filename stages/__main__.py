from stages.cli import main
from stages.runtime import quiet_native_stderr

quiet_native_stderr()
main()
