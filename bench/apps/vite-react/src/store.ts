import { create } from "zustand";

export interface Deploy {
  id: string;
  at: Date;
  files: number;
}

interface DeployState {
  deploys: Deploy[];
  add: (files: number) => void;
}

export const useDeploys = create<DeployState>((set) => ({
  deploys: [],
  add: (files) =>
    set((state) => ({
      deploys: [{ id: `d${state.deploys.length + 1}`, at: new Date(), files }, ...state.deploys],
    })),
}));
