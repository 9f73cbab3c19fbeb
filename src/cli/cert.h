/*
 * cert: `eddy cert`, which makes a local certificate authority and a server certificate signed by it, so
 * that clients can verify eddy's TLS by trusting one file (AWS_CA_BUNDLE, NODE_EXTRA_CA_CERTS, --ca-bundle).
 *
 * Files in the output folder: ca.pem, ca-key.pem (the CA, made once and then reused, never overwritten),
 * server.pem (the leaf certificate only) and server-key.pem (a new key each run). Keys are 0600,
 * certificates 0644, each written atomically (temporary file, fsync, rename, fsync of the folder).
 */
#ifndef EDDY_CLI_CERT_H
#define EDDY_CLI_CERT_H

/*
 * Runs `eddy cert`. argv[0] is the subcommand name ("cert"), the options follow; argv is borrowed (getopt
 * may reorder its entries). Prints what it wrote to stdout, errors to stderr. Returns the exit status:
 * 0 done, 1 failed (nothing is left half-written), 2 bad usage.
 */
int cert_main(int argc, char **argv);

#endif
