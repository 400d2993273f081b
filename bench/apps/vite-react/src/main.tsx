import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { HashRouter, Link, Route, Routes } from "react-router-dom";
import { Deploys } from "./Deploys";
import { Home } from "./Home";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <HashRouter>
      <nav>
        <Link to="/">Home</Link> · <Link to="/deploys">Deploys</Link>
      </nav>
      <Routes>
        <Route path="/" element={<Home />} />
        <Route path="/deploys" element={<Deploys />} />
      </Routes>
    </HashRouter>
  </StrictMode>,
);
