import { expect, test } from "vitest";
import { useDeploys } from "./store";

test("add records a deploy", () => {
  useDeploys.getState().add(3);
  expect(useDeploys.getState().deploys[0].files).toBe(3);
});
