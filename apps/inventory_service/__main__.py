from inventory_service.main import main

main()
