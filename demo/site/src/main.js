import "./style.css";
import { formatBuildInfo } from "./build-info.js";

const app = document.querySelector("#app");
app.innerHTML = `
  <h1>Hello from Function Compute</h1>
  <p>This page was installed and built with Vite inside an FC custom runtime, then deployed to OSS.</p>
  <p class="info">${formatBuildInfo(import.meta.env)}</p>
  <button id="count" type="button">clicked 0 times</button>
`;
let clicks = 0;
document.querySelector("#count").addEventListener("click", (event) => {
  clicks += 1;
  event.target.textContent = `clicked ${clicks} time${clicks === 1 ? "" : "s"}`;
});
