/* agent: the `eddy agent` subcommand (see agent.c). */
#ifndef EDDY_CLI_AGENT_H
#define EDDY_CLI_AGENT_H

/* argv[0] is "agent". Returns the exit status. */
int agent_main(int argc, char **argv);

#endif
