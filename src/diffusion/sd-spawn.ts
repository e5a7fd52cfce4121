/**
 * How every sd.cpp program (sd-cli per image, sd-server per burst) is started, so both are
 * owned the same way: output streamed through pipes, never buffered; a failed exit is a
 * result to read, not a throw; and its own process group, so a Ctrl-C in the terminal (or
 * systemd's KillMode=control-group SIGTERM, which reaches the whole foreground group at
 * once) cannot kill it before the server's shutdown has decided what happens to the job on
 * it. The server decides.
 */
export function sdSpawnOptions(cwd: string | undefined, env: Record<string, string | undefined> | undefined) {
  return {
    cwd,
    env,
    extendEnv: true,
    buffer: false,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    reject: false,
    windowsHide: true,
    detached: process.platform !== "win32",
  } as const;
}

/**
 * execa's own cleanup skips detached children: if this process exits, the sd.cpp program
 * must not outlive it. Returns what stops watching (call it once the child has exited).
 */
export function killWhenThisProcessExits(child: { kill(signal: "SIGKILL"): unknown }): () => void {
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  return () => process.removeListener("exit", killOnExit);
}
