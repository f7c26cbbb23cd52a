from saga_worker.main import main

main()
