import { loadEnvFile } from "./env-file.js";

/** Side effect only: loads .env / --env-file (see env-file.ts); a usage error ends the process (exit 2). */
const problem = loadEnvFile();
if (problem !== undefined) {
  process.stderr.write(`diffugen: ${problem}\n`);
  process.exit(2);
}
