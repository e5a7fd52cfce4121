import { describe, expect, it } from "vitest";
import { isBackgroundTask } from "../../../src/llm/background-task.js";
import { taskMessage, taskNames } from "../../server/openwebui-tasks.js";

describe("isBackgroundTask", () => {
  it.each(taskNames)("recognises OpenWebUI's %s request, which quotes 'draw a red fox'", (task) => {
    const message = taskMessage(task);
    expect(message).toContain("USER: draw a red fox");
    expect(isBackgroundTask(message)).toBe(true);
  });

  it("recognises a task template an admin indented or spaced differently", () => {
    expect(isBackgroundTask("\n  ###  task:\n\nName the chat.\n<chat_history>\nUSER: hi\n</chat_history>")).toBe(true);
  });

  it("hears a user as a user: ordinary messages, and either mark alone", () => {
    expect(isBackgroundTask("draw a red fox")).toBe(false);
    expect(isBackgroundTask("### Task: draw a red fox in the snow")).toBe(false);
    expect(isBackgroundTask("What does <chat_history>USER: draw a fox</chat_history> mean in OpenWebUI?")).toBe(false);
    expect(isBackgroundTask("Please read this:\n### Task:\nTitle it\n<chat_history>\nUSER: hi\n</chat_history>")).toBe(false);
    // The history block must close after it opens.
    expect(isBackgroundTask("### Task:\nTitle it\n</chat_history> <chat_history>")).toBe(false);
  });
});
