/* consume: the `eddy consume` subcommand, a KCL MultiLang daemon (see consume.c). */
#ifndef EDDY_CLI_CONSUME_H
#define EDDY_CLI_CONSUME_H

/* argv[0] is "consume". Returns the exit status. */
int consume_main(int argc, char **argv);

#endif
