// Process entry for the CLI (bin/vfio-user.js and child processes the CLI
// starts itself): runs main() with the process arguments.
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
