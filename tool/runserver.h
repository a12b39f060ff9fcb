/* laurel runserver: the single-process development server (docs/runserver.md). */
#ifndef LAUREL_TOOL_RUNSERVER_H
#define LAUREL_TOOL_RUNSERVER_H

/* Runs it with argv[0] = "runserver". Returns the exit status: 0 after a clean stop, 2 for a bad
 * option or application, 1 when it cannot start. */
int runserver_main(int argc, char **argv);

#endif
