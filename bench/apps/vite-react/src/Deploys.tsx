import { formatDistanceToNow } from "date-fns";
import { useDeploys } from "./store";

export function Deploys() {
  const deploys = useDeploys((s) => s.deploys);
  if (deploys.length === 0) return <p>No deploys yet.</p>;
  return (
    <ul>
      {deploys.map((d) => (
        <li key={d.id}>
          {d.id}: {d.files} files, {formatDistanceToNow(d.at, { addSuffix: true })}
        </li>
      ))}
    </ul>
  );
}
