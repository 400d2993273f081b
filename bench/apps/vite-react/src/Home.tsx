import { useDeploys } from "./store";

export function Home() {
  const add = useDeploys((s) => s.add);
  return (
    <main>
      <h1>Built by fcbuild</h1>
      <button type="button" onClick={() => add(Math.floor(Math.random() * 100))}>
        record a deploy
      </button>
    </main>
  );
}
