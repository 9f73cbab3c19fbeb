/* tail: the `eddy tail` subcommand (see tail.c). */
#ifndef EDDY_CLI_TAIL_H
#define EDDY_CLI_TAIL_H

/* argv[0] is "tail". Returns the exit status. */
int tail_main(int argc, char **argv);

#endif
