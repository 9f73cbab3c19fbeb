/* put: the `eddy put` subcommand (see put.c). */
#ifndef EDDY_CLI_PUT_H
#define EDDY_CLI_PUT_H

/* argv[0] is "put". Returns the exit status. */
int put_main(int argc, char **argv);

#endif
